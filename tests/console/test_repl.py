"""``chassis-console --repl``: driven through a pseudo-terminal against a real service.

The service side (:mod:`nameko_chassis.probe.repl`) is also checked op by op through the
client, and the editing rules (when Enter runs the input) as plain functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from chassis_console.repl import history_path, should_run
from chassis_console.targets import TargetAddress
from chassis_console.targets.backdoor import BackdoorClient

from tests.harness import REPO, Service

UP = "\x1b[A"
#: The prompt as prompt-toolkit draws it: its trailing space may come out as a cursor move.
PROMPT = ">>>"
#: Styles between words of highlighted text (tracebacks, notices).
SGR = r"(?:\x1b\[[0-9;]*m)*"
CTRL_D = "\x04"


@pytest.fixture(scope="module")
def service(shared_parking: Service) -> Service:
    return shared_parking


def spawn_repl(target: str, data_home: Path) -> pexpect.spawn:
    env = {**os.environ, "XDG_DATA_HOME": str(data_home), "TERM": "xterm",
           "PROMPT_TOOLKIT_NO_CPR": "1", "NO_COLOR": "1"}
    child = pexpect.spawn(
        sys.executable, ["-c", "from chassis_console.cli import main; main()", "--repl", target],
        cwd=str(REPO), env=env, encoding="utf-8", dimensions=(50, 200), timeout=20)
    child.expect("Without imports")
    child.expect(PROMPT)
    return child


def run(child: pexpect.spawn, text: str, expect: str) -> str:
    """Type ``text`` (``\\r`` is Enter), wait for ``expect`` (a regex) and the next prompt;
    return what came before ``expect``."""
    child.send(text)
    child.expect(expect)
    before = child.before
    child.expect(PROMPT)
    return before


def close(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_evaluates_completes_and_runs_blocks(service, tmp_path):
    child = spawn_repl(service.target, tmp_path)
    try:
        run(child, "'ok-' + str(6 * 7)\r", "'ok-42'")
        run(child, "print('hello ' + 'there')\r", "hello there")
        # completion computed in the service: Tab turns runner.service_m into runner.service_map
        before = run(child, "runner.service_m\t\r", r"\{'parking': <ServiceContainer \[parking\]")
        assert "AttributeError" not in before
        # a two-line function, sent as one unit when the empty line ends the block
        child.send("def twice(x):\rreturn 'twice-' + x * 2\r\r")
        run(child, "twice('ab')\r", "'twice-abab'")
        # a remote exception is a traceback; the session goes on
        run(child, "{}['missing-key']\r", f"KeyError{SGR}: {SGR}'missing-key'")
        run(child, "'still-' + 'here'\r", "'still-here'")
        # Ctrl-C drops the input being typed; nothing is sent
        child.send("this_name_is_never_sent")
        child.send("\x03")
        run(child, "'after-' + 'cancel'\r", "'after-cancel'")
        # the helpers need no import
        run(child, "debug_runner(runner)\r", r"rpc\s+login, park")
        child.send(CTRL_D)
        child.expect("left the REPL")
        assert close(child) == 0
    finally:
        child.close(force=True)


def test_exit_and_system_exit_leave_the_service_running(service, tmp_path):
    child = spawn_repl(service.target, tmp_path)
    try:
        run(child, "raise SystemExit\r", r"SystemExit\(\) caught")
        run(child, "import sys; sys.exit(3)\r", r"SystemExit\(3\) caught")
        run(child, "if True: exit()\r\r", r"SystemExit\(\) caught")
        run(child, "import os; os._exit(1)\r", r"os\._exit\(\) would stop the service")
        run(child, "runner.stop()\r", r"stop\(\) of the service runner would stop the service")
        assert service.rpc.call("parking", "ping") == "pong"
        child.send("exit()\r")
        child.expect("left the REPL — the service keeps running")
        assert close(child) == 0
    finally:
        child.close(force=True)
    assert service.rpc.call("parking", "ping") == "pong"
    # nothing of the REPL's is left in the shared namespace; nameko's own exit stub is back
    names = service.eval("sorted(k for k in globals() if not k.startswith('__'))")
    assert not {"debug_runner", "debug_container", "collect", "snapshot"} & set(eval(names))
    assert service.eval("exit.__name__") == "'_bad_call'"


def test_history_persists_across_runs(service, tmp_path):
    child = spawn_repl(service.target, tmp_path)
    try:
        run(child, "'hist' + 'ory-' + 'kept'\r", "'history-kept'")
        child.send(CTRL_D)
        assert close(child) == 0
    finally:
        child.close(force=True)
    path = history_path(TargetAddress.parse(service.target), {"XDG_DATA_HOME": str(tmp_path)})
    assert path.parent == tmp_path / "nameko-chassis" / "history"
    assert "'hist' + 'ory-' + 'kept'" in path.read_text()
    assert path.stat().st_mode & 0o077 == 0

    child = spawn_repl(service.target, tmp_path)
    try:
        run(child, UP + "\r", "'history-kept'")
        child.send(CTRL_D)
        assert close(child) == 0
    finally:
        child.close(force=True)


def test_a_long_statement_streams_shows_it_runs_and_ctrl_c_interrupts(service, tmp_path):
    child = spawn_repl(service.target, tmp_path)
    try:
        # output comes as it is printed, and the spinner says the hub is free meanwhile
        child.send("import eventlet\rfor i in range(50):\rprint('tick-' + str(i))\r"
                   "eventlet.sleep(0.2)\r\r")
        child.expect("tick-1\r\n")
        child.expect(r"still running \d+\.\ds — it yields, so workers still run")
        # the first Ctrl-C interrupts it where it waits
        child.send("\x03")
        child.expect("interrupting")
        child.expect(f"KeyboardInterrupt{SGR}\r*\n")
        child.expect(PROMPT)
        assert "tick-49" not in child.before
        assert service.rpc.call("parking", "ping") == "pong"
        # code that never yields holds the hub: the spinner says so; Ctrl-C cannot reach it,
        # a second Ctrl-C stops waiting; the next input reconnects once the hub is free again
        release = tmp_path / "release"
        child.send(f"import os, time; t = time.time()\r"  # bounded, should the test fail
                   f"while not os.path.exists({str(release)!r}) and time.time() < t + 20: "
                   "pass\r\r")
        child.expect("it holds the hub: no worker runs")
        child.send("\x03")
        child.expect("interrupting")
        child.send("\x03")
        child.expect("stopped waiting after")
        child.expect(PROMPT)
        release.touch()
        run(child, "'next-' + 'one'\r", "'next-one'")
        child.send(CTRL_D)
        assert close(child) == 0
    finally:
        child.close(force=True)


def test_killed_service_gives_a_clear_message_and_an_offer_to_reconnect(start_service, tmp_path):
    service = start_service()
    child = spawn_repl(service.target, tmp_path)
    try:
        run(child, "'alive-' + 'yes'\r", "'alive-yes'")
        service.process.kill()
        child.send("'alive-' + 'still'\r")
        child.expect(r"connection to 127\.0\.0\.1:\d+ (closed by the service|lost)")
        child.expect(r"Reconnect to 127\.0\.0\.1:\d+\? \[Y/n\]")
        child.send("y\r")
        child.expect("cannot connect to .*connection refused")
        child.expect(r"Reconnect to .*\? \[Y/n\]")
        child.send("n\r")
        child.expect(pexpect.EOF)
        assert "Traceback" not in (child.before or "")
        child.close()
        assert child.exitstatus == 3
    finally:
        child.close(force=True)


def test_input_that_is_not_a_terminal_runs_as_one_script(service):
    script = ("'piped-' + 'ok'\nif True:\n    print('in-block')\nprint('after-block')\n"
              "print('\\ud800-lone-surrogate')\n")
    done = subprocess.run(
        [sys.executable, "-c", "from chassis_console.cli import main; main()", "--repl",
         service.target], input=script, capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "'piped-ok'\nin-block\nafter-block\n?-lone-surrogate\n"
    failed = subprocess.run(
        [sys.executable, "-c", "from chassis_console.cli import main; main()", "--repl",
         service.target], input="1/0\n", capture_output=True, text=True, cwd=REPO, timeout=30)
    assert failed.returncode == 1
    assert "ZeroDivisionError: division by zero" in failed.stderr


# -- the service side, op by op ------------------------------------------------------------------


def test_exec_op_captures_only_its_own_output_and_leaves_names_alone(service):
    with BackdoorClient(service.target) as client:
        def exec_(source: str) -> dict:
            return client.request("exec", source=source)

        # another greenthread printing meanwhile goes to the service's stdout, not the REPL's
        out = exec_("import eventlet; gt = eventlet.spawn(print, 'elsewhere'); eventlet.sleep(0.05); "
                    "print('mine')")
        assert out["output"] == "mine\n"
        # several statements pasted at once: each runs, expressions echo
        assert exec_("a = 2\nb = 3\na * b")["output"] == "6\n"
        # the last value is `_` in the backdoor namespace; builtins._ (gettext's) is left alone
        exec_("import builtins; builtins._ = 'gettext'")
        assert exec_("_ * 7")["output"] == "42\n"
        assert exec_("builtins._")["output"] == "'gettext'\n"
        exec_("del builtins._")
        # a name the user owns is never shadowed by a helper, nor removed afterwards
        exec_("collect = 'mine'")
        assert exec_("collect")["output"] == "'mine'\n"
        # a signal-0 liveness check of the service is allowed, a real signal is refused
        assert exec_("import os; os.kill(os.getpid(), 0)")["refused"] is None
        assert "os.kill()" in exec_("os.kill(os.getpid(), 15)")["refused"]
        assert "EOFError" in exec_("input()")["error"]
        exec_("del a, b, gt, i, collect, os, eventlet, builtins, _")
        # a statement started in a greenthread of its own streams its output
        started = client.request("exec_start", source=(
            "import eventlet\nfor i in range(3):\n    print(i)\n    eventlet.sleep(0.3)\n"))
        first = client.request("exec_poll", id=started["id"], offset=0, wait=2)
        assert (first["output"], first["done"]) == ("0\n", False)
        # while it runs, code from another connection is guarded too
        assert "os.kill()" in exec_("import os; os.kill(os.getpid(), 15)")["refused"]
        polled, offset = first["output"], first["offset"]
        while True:
            poll = client.request("exec_poll", id=started["id"], offset=offset, wait=2)
            polled, offset = polled + poll["output"], poll["offset"]
            if poll["done"]:
                break
        assert polled == "0\n1\n2\n" and poll["error"] is None
        completions = client.request("complete", line="runner.service_map['pa")
        assert completions["matches"] == ["parking']"]
        completions = client.request("complete", line="x = runner.service_map['parking'].servi")
        assert "runner.service_map['parking'].service_name" in completions["matches"]
        # a service without nameko-chassis sends debug_runner's page for the console to draw
        import io

        from chassis_console.repl.output import write_output

        from nameko_chassis.probe import wire
        out = io.StringIO()
        write_output("before\n" + wire.encode_page(client.collect(stacks="none")) + "after\n",
                     out)
        picture = out.getvalue()
        assert picture.startswith("before\n") and picture.endswith("after\n")
        assert "parking" in picture and "ping" in picture and "PAGE" not in picture
    assert service.rpc.call("parking", "ping") == "pong"


# -- editing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "runs"), [
    ("1 + 1", True),
    ("for i in range(3): i", False),      # a block: the prompt waits for an empty line
    ("def f():", False),
    ("def f():\n    return 1", False),
    ("def f():\n    return 1\n", True),
    ("def f():\n    return 1\n    ", True),
    ("foo(\n1,\n", False),                # a bracket is still open
    ("if x:\n\n", True),                  # two empty lines run it anyway (to show the error)
    ("x = 1\ny = 2\n", True),             # several statements
    ("1 +", True),                        # invalid: run it to show the SyntaxError
])
def test_enter_runs_input_when_the_prompt_would(text, runs):
    assert should_run(text) is runs


def test_history_path_is_per_target_in_the_data_directory(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path)}
    assert history_path(TargetAddress.parse("127.0.0.1:12345"), env) == \
        tmp_path / "nameko-chassis" / "history" / "127.0.0.1_12345"
    assert history_path(TargetAddress.parse("unix:/run/svc.sock"), env).name == "unix__run_svc.sock"
    assert history_path(TargetAddress.parse("12345"), {}).parts[-4:] == \
        ("share", "nameko-chassis", "history", "localhost_12345")
