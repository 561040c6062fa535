"""Patient notifications: an email to the patient when their prescription's status changes.

:func:`rxroute.notifications.service.status_moved` is called where the status moves (next to
the outbox), writes a ``patient_notifications`` row and defers its job in that transaction;
:mod:`rxroute.notifications.tasks` composes and sends it through Region A's SMTP relay and
retries with Region A's retry policy; :mod:`rxroute.notifications.pages` is the unsubscribe
page the link in every email leads to.
"""
