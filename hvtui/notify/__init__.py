"""Notifications: a schedule run's report sent by e-mail or webhook (issue 22)."""
