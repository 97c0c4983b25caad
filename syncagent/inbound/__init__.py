"""Inbound notifications: the daemon's `/hooks/<channel>` endpoint (`server`) and the platforms' checks (`verifiers`).

A notification is verified as its platform documents, stored durably in the journal, answered,
and wakes the step it concerns; it never carries data the agent trusts (the step reads the
platform's API as on any poll, and polling stays the safety net).
"""
