"""JSON APIs over members: ``merchant`` (POS, /api/v1/) and ``shopper`` (mini-program, /api/mp/v1/)."""
