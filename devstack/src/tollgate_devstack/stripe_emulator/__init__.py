"""A stateful Stripe emulator for the calls Tollgate makes.

stripe-mock validates every request against Stripe's OpenAPI spec but keeps no state;
this emulator forwards each /v1 request to stripe-mock first and refuses whatever it
refuses, then answers from its own state for the resources Tollgate uses (customers,
Checkout Sessions, Billing Meter events), and signs and delivers webhooks.
"""
