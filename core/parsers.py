"""The request parser of every JSON API here (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]).

Its own module: DRF reads the setting while its views module is being imported, so
the parser cannot live in a module that imports DRF's views (core/api.py).
"""

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; JSON nested deeper than Python's recursion limit is a 400
    ``malformed_json`` like any other bad JSON (2 KB of brackets was a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON nested too deeply.") from None
