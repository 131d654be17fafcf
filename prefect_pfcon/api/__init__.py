"""The pfcon-format HTTP API: routes, forms, authentication and limits; the service does the rest."""
