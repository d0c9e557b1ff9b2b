"""Voice assistant channel for omniretail.

Alexa custom skill: interaction model from the catalog, ssml responses, signed requests.
"""
