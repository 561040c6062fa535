"""Server-rendered pages: sign-in, the patient app, the support console, admin.

Jinja2 templates (autoescaped), a little hand-written JS, no build step. Pages authenticate
with a signed, HttpOnly, SameSite session cookie; every form carries a CSRF token.
"""
