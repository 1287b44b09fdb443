"""The local stack: moto server, resources created from template.yaml, HTTP front and poller.

Development and CI only; nothing here is imported by a Lambda handler.
"""
