"""The helper's HTTP API for Odoo: signed requests, long work as jobs."""
