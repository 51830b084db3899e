"""The web dashboard (``sessiond ui``): memories, projects, sessions and the stack, served on
127.0.0.1 by a gateway that talks to the stack through the hub like any other.

``server`` runs it, ``app`` routes, ``security`` guards every request, ``dashboard`` holds what
the pages share; one module per page group (``memories``, ``deletion``, ``projects``,
``sessions``, ``stack``); ``charts`` draws SVG, ``render`` formats; ``templates/`` and
``static/`` are every asset it serves.
"""

DEFAULT_PORT = 47813
