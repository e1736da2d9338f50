"""A ServiceRunner started from code, with a backdoor whose namespace does not call it `runner`:
`python -m tests.services.programmatic_runner PORT CONFIG`. The collector must find it with gc."""

import sys

import eventlet

eventlet.monkey_patch()

import yaml  # noqa: E402
from eventlet import backdoor  # noqa: E402
from nameko import config  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

from tests.services.parking import Parking  # noqa: E402

if __name__ == "__main__":
    port, config_path = int(sys.argv[1]), sys.argv[2]
    with open(config_path) as f:
        config.update(yaml.safe_load(f))
    my_runner = ServiceRunner()
    my_runner.add_service(Parking)
    my_runner.start()
    eventlet.spawn(backdoor.backdoor_server, eventlet.listen(("127.0.0.1", port)),
                   locals={"services": "here somewhere"})
    my_runner.wait()
