"""The customer's portal: sign up, pay, keys, balance, usage, auto-recharge."""
