"""fcgigw.server."""
