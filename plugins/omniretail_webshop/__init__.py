"""Web shop channel for omniretail.

Product pages with schema.org json-ld and open graph, google merchant feeds, checkout url.
"""
