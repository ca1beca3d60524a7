"""The guardian desk: `dew serve`. One process serving the JSON API (`/api/v1`), the web pages,
and a pool of workers that execute runs in the background.

An edge of equal rank with the CLI: it turns a request into calls of `guardians/` and a domain
error into an HTTP status with a JSON body (or a page). No rule of who may do what lives here.
"""
