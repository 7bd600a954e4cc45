"""Security qualification: a path-normalization probe with real nginx/apache2 upstreams, and its report."""
