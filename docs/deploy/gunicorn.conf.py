"""gunicorn's settings for the web app (docs/deploy.md):

    gunicorn -c docs/deploy/gunicorn.conf.py --bind 127.0.0.1:8000 --workers 4 o2o_site.wsgi

Per host, only ``--bind`` and ``--workers`` change (command-line options win over this
file); tests/e2e starts gunicorn with this file too.
"""

# Threads per worker: requests wait on the database and the platforms, not the CPU.
threads = 4
# nginx keeps connections to us open; a worker thread that hangs is killed after this.
keepalive = 5
timeout = 30
graceful_timeout = 20

# The access log to stdout (journald, the container's log). The request line is logged
# as method, path *without the query string* (%(U)s, where the default %(r)s has the
# whole URI) and protocol, and no referer: /wechat/'s query string carries WeChat's
# signature, which covers the query but not the body, and OAuth callbacks carry codes.
# A log must not hand them out.
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
errorlog = "-"

# Only nginx on this host may say which scheme the client used (X-Forwarded-Proto);
# Django reads it through SECURE_PROXY_SSL_HEADER.
forwarded_allow_ips = "127.0.0.1"
