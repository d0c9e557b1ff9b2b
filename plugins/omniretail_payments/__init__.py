"""Built-in payment providers for omniretail: the loyalty wallet, pay at pickup and cards over HTTP.

Also the loyalty programme's hooks: points for every order placed on any channel, and the capture
of pay-at-pickup (and any ``capture = "on_fulfilment"``) payments when the goods are handed over.
See ``docs/payments.md``.
"""
