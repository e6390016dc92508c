"""The parts NovaVoice assembles: prompt store and caches, the Sonic client, audio pumps.

Nothing here imports :mod:`sessions`; the daemon builds calls out of these parts.
"""
