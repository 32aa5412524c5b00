"""Composition: the entry points that put the services together.

`app.gateway` mounts every service's Flask app behind one WSGI entry point, `app.devstack` is
`make run` (embedded servers, migrations, the library, supervised processes) and `app.cli` is the
ops CLI. Nothing in `shared/` or `services/` imports this package; it imports them.
"""
