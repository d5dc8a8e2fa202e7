"""The WSGI application (gunicorn o2o_site.wsgi).

One guard sits in front of Django: a request whose Content-Type names a charset that
is not a text encoding (rot13, base64, zlib …) is answered 400 here. Django would
accept the name and then fail decoding the query string while it builds the request,
before any middleware or view can answer: a 500 for anyone who asks.
"""

import codecs
import os
from email.message import Message

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "o2o_site.settings")


def _charset_is_text(content_type: str) -> bool:
    if "charset" not in content_type.lower():
        return True
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    if not isinstance(charset, str) or not charset:
        return True
    try:
        return codecs.lookup(charset)._is_text_encoding
    except (LookupError, ValueError):
        return True  # an unknown name: Django falls back to its default and the views refuse it


def refuse_byte_transform_charsets(app):
    def guarded(environ, start_response):
        if not _charset_is_text(environ.get("CONTENT_TYPE", "")):
            body = b"bad request: the Content-Type's charset is not a text encoding"
            start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return guarded


application = refuse_byte_transform_charsets(get_wsgi_application())
