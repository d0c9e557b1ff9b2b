"""Chat commerce for omniretail: a WhatsApp-style catalog and orders taken in chat messages.

An example third-party channel plugin (see ``docs/writing-a-channel-plugin.md`` in the omniretail
repository). The hooks are in ``omniretail_chat.plugin``, found through the ``omniretail``
entry-point group.
"""

__version__ = "0.1.0"
