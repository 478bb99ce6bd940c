"""A read-only web view of served repositories (``serve --ui``): HTML pages and a JSON API.

``app`` routes requests, ``api`` builds the documents (the JSON the API returns and the
pages render), ``render`` and ``templates/`` make HTML, ``sunburst`` draws the catalog map,
``static/`` holds the one script and style sheet. See ``docs/web.md``.
"""

from .app import Response, WebApp

__all__ = ["Response", "WebApp"]
