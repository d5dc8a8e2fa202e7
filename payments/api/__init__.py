"""Merchant API (/api/v1/) for sales and QR orders, and the shopper's order API (/api/mp/v1/orders/)."""
