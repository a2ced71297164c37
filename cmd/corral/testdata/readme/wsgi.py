# The WSGI app that cmd/corral/readme_test.go serves with the README's `gunicorn` (socket from LISTEN_FDS).
import os


def app(environ, start_response):
    body = ("gunicorn %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
