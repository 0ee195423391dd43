"""The README's REST examples, run as written against ``ryu-manager lvs_app``."""

import re
import subprocess
from pathlib import Path

from conftest import REPO, Controller, assert_clean_log


def sh_block(heading, first_line):
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    return next(block for block in re.findall(r"```sh\n(.*?)```", section, re.S)
                if block.startswith(first_line))


def test_the_rest_api_curl_examples_work_as_written(tmp_path):
    block = sh_block("## REST API", "curl ")
    rules = Path(tmp_path) / "saved.rules"
    rules.write_text("-A -t 10.0.0.100:443 -s rr\n-a -t 10.0.0.100:443 -r 10.0.0.12:443 -g -w 1\n")
    ctl = Controller(tmp_path, rules=tmp_path / "lvs.rules").start()
    try:
        script = block.replace("localhost:8080", f"localhost:{ctl.rest_port}") \
                      .replace("/etc/lvs.rules", str(rules))
        # every example must succeed: an HTTP error fails curl, and the script
        result = subprocess.run(["bash", "-euc", 'curl() { command curl --fail-with-body "$@"; }\n'
                                 + script], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"weight": 0' in result.stdout                  # the PATCH answered
        assert ctl.lvsadm("-S", "-n").stdout == rules.read_text()   # the PUT replaced all
    finally:
        ctl.stop()
    assert_clean_log(ctl.log_text())
