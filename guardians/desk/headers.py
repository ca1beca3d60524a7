"""The Content-Security-Policy of every page and answer."""

# No inline script or style anywhere: model output that slipped past escaping still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
