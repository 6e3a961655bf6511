"""The pages people open in a browser: plain HTML, CSS and JS served by the app, no build step.

Each page has its own module (``agent_page``) and its own folder of files, so
pages can be added without touching each other.
"""
