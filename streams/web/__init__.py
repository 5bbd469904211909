"""The API's web pages for people who run Pulse: the moderators' review queue (``/moderation``)
and the operator dashboard, as static HTML, vanilla JavaScript and CSS served by ``pulse api``
(:mod:`streams.web.pages`), talking to the JSON API with the browser session of ``POST
/v1/session``. Nothing is fetched from outside (no CDN): the files are package data under
``streams/web/static/``. docs/web.md.
"""
