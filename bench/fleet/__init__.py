"""The study across a fleet of Pis: plan shards, follow them, move a dead host's work, merge the signed folders.

``plan`` assigns (model, dataset) blocks to the hosts of an Ansible inventory so they finish together and writes
one shard spec per host; Ansible (``fleet/site.yml``) runs each shard on its host with the ordinary make targets;
``status`` reads progress from the hosts; ``merge`` verifies the fetched shard folders and joins them into one
sealed result folder that records which device ran which answer; ``chain`` lets ``bench verify`` check that
folder back to each device's key. Nothing here runs on a Pi while it measures except the one-shot ``probe``.
"""
