"""The operator's web pages (server-rendered Jinja2 templates, htmx for partial refresh)."""
