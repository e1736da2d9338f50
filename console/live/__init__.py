"""The live console: a Textual app (:mod:`.app`, styled by ``app.tcss``) fed by one
:class:`~.poller.TargetPoller` per target, with its panels (:mod:`.status`, :mod:`.services`,
:mod:`.workers`, :mod:`.history`) and screens (:mod:`.detail`, :mod:`.dialogs`).
"""
