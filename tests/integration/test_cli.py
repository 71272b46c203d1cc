"""The `strata` command: help, version, check-config, exit codes, and the
help and man page that come from the one command table."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest


def test_help_lists_every_command(strata_cmd):
    p = strata_cmd("--help", check=0)
    assert "usage: strata COMMAND" in p.stdout
    for cmd in ("serve", "check-config", "clear", "warm", "stats", "get", "set", "del",
                "version"):
        assert re.search(r"^  %s +\S" % cmd, p.stdout, re.M), cmd


def test_no_arguments_is_a_usage_error(strata_cmd):
    p = strata_cmd(check=2)
    assert "usage:" in p.stderr


def test_unknown_command_exits_2_with_one_line(strata_cmd):
    p = strata_cmd("frobnicate", check=2)
    assert p.stderr.strip().count("\n") == 0
    assert "unknown command 'frobnicate'" in p.stderr


def test_version(strata_cmd):
    p = strata_cmd("--version", check=0)
    assert re.fullmatch(r"strata \d+\.\d+\.\d+\n", p.stdout)


def test_subcommand_help(strata_cmd):
    p = strata_cmd("check-config", "--help", check=0)
    assert "usage: strata check-config -c FILE" in p.stdout


def test_check_config_accepts_a_valid_file(strata_cmd, tmp_path):
    cfg = tmp_path / "strata.yaml"
    cfg.write_text(
        "caches:\n"
        "  default: { backend: memory, ttl: 5m, max_memory: 64MB }\n"
        "  static:  { ttl: 1h, compress: zstd, compress_level: 3 }\n"
    )
    p = strata_cmd("check-config", "-c", str(cfg), check=0)
    assert "ok" in p.stdout


def test_check_config_reports_file_and_line(strata_cmd, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("caches:\n  default:\n    ttl: 300\n")
    p = strata_cmd("check-config", "-c", str(cfg), check=1)
    assert f"{cfg}:3:" in p.stderr
    assert p.stdout == ""


def test_check_config_unknown_key(strata_cmd, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("caches:\n  default:\n    ttl: 5m\n    max_memroy: 1MB\n")
    p = strata_cmd("check-config", "-c", str(cfg), check=1)
    assert f"{cfg}:4:" in p.stderr
    assert "max_memroy" in p.stderr


def test_check_config_missing_file(strata_cmd, tmp_path):
    p = strata_cmd("check-config", "-c", str(tmp_path / "nope.yaml"), check=1)
    assert "nope.yaml" in p.stderr


def test_check_config_refuses_a_sentinel_url_without_a_master(strata_cmd, tmp_path):
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text(
        "caches:\n  default: { backend: memory }\n"
        "  session:\n    backend: tiered\n    url: redis-sentinel://127.0.0.1:26379\n"
    )
    p = strata_cmd("check-config", "-c", str(cfg), check=1)
    assert f"{cfg}:3:" in p.stderr
    assert "no master name" in p.stderr


def test_check_config_refuses_an_unset_variable_in_any_section(strata_cmd, tmp_path):
    # The admin commands read admin: only (test_cli_ops.py); check-config, like
    # strata serve, still reads every section and refuses an unset ${VAR}.
    var = "STRATA_TEST_CHECK_SURELY_UNSET"
    assert var not in os.environ
    for i, (text, line) in enumerate((
            ('admin: { token: t }\nhttp_cache:\n  user_secret: "${%s}"\n' % var, 3),
            ('server:\n  upstream: "http://${%s}:80"\n' % var, 2),
            ('admin:\n  token: "${%s}"\n' % var, 2),
            ('caches:\n  a: { ttl: "${%s}" }\n' % var, 2))):
        cfg = tmp_path / ("env%d.yaml" % i)
        cfg.write_text(text)
        p = strata_cmd("check-config", "-c", str(cfg), check=1)
        assert p.stderr == "%s:%d: environment variable %s is not set\n" % (
            cfg, line, var), p.stderr
        assert p.stdout == ""


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("version",),
                                  ("check-config", "--help"), ("check-config", "-c", "{cfg}")])
def test_output_that_cannot_be_written_exits_1(build_dir, tmp_path, args):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("caches:\n  default: { ttl: 5m }\n")
    argv = [str(build_dir / "strata")] + [a.format(cfg=cfg) for a in args]
    with open("/dev/full", "wb") as full:
        p = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=30)
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1 and "cannot write to stdout" in p.stderr, p.stderr


def test_check_config_requires_a_file(strata_cmd):
    p = strata_cmd("check-config", check=2)
    assert "-c FILE" in p.stderr


def test_demo_runs(build_dir):
    import subprocess

    p = subprocess.run([str(build_dir / "strata-demo")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert 'get product:1    -> "lamp"' in p.stdout
    assert "invalidate_pattern(\"user:*\") removed 2" in p.stdout
    assert "(loader ran 1 time)" in p.stdout


# ---- help and the man page come from one table ----------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "check-config", "clear", "warm", "stats", "get", "set", "del",
            "version")


def _help_options(text):
    """The option rows of `strata CMD --help`: [(alias or None, name, arg or None)]."""
    rows = []
    in_opts = False
    for ln in text.splitlines():
        if ln == "options:":
            in_opts = True
            continue
        if in_opts and not ln.strip():
            break
        if in_opts:
            m = re.match(r"^  (?:(-\w), |    )(--[\w-]+)(?: (\S+))?  ", ln)
            assert m, "option row %r" % ln
            rows.append(m.groups())
    return rows


def test_every_command_has_help_with_usage_summary_and_options(strata_cmd):
    top = strata_cmd("--help", check=0).stdout
    for cmd in COMMANDS:
        p = strata_cmd(cmd, "--help", check=0)
        lines = p.stdout.splitlines()
        assert lines[0].startswith("usage: strata %s" % cmd), lines[0]
        summary = lines[2]
        assert summary and summary in top  # the same summary as `strata --help`
        opts = _help_options(p.stdout)
        assert ("-h", "--help", None) in opts


def test_admin_commands_list_their_options(strata_cmd):
    expect = {
        "clear": ["--all", "--pattern", "--tag", "--url", "--url-pattern", "--cache",
                  "--json"],
        "warm": ["--endpoints", "--file", "--concurrency", "--json"],
        "stats": ["--json", "--watch", "--interval"],
        "get": ["--cache"],
        "set": ["--ttl", "--tags", "--cache"],
        "del": ["--cache"],
    }
    for cmd, names in expect.items():
        opts = _help_options(strata_cmd(cmd, "--help", check=0).stdout)
        got = [n for _, n, _ in opts]
        for n in names + ["--admin", "--config"]:
            assert n in got, (cmd, n, got)
        assert ("-c", "--config", "FILE") in opts


def test_options_outside_the_table_are_refused(strata_cmd):
    # What --help does not list, the parser does not accept.
    p = strata_cmd("get", "k", "--tags", "a", check=2)
    assert "unknown option '--tags'" in p.stderr


def _man_text():
    return (ROOT / "docs" / "strata.1").read_text()


def test_man_page_documents_every_command_and_option(strata_cmd):
    man = _man_text().replace("\\-", "-")
    for cmd in COMMANDS:
        assert re.search(r"^\.SS \"strata %s\b" % re.escape(cmd), man, re.M), cmd
        for alias, name, _ in _help_options(strata_cmd(cmd, "--help", check=0).stdout):
            if name == "--help":
                continue
            assert name in man, (cmd, name)
            if alias:
                assert alias in man, (cmd, alias)
    for section in ("EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert re.search(r"^\.SH %s$" % section, man, re.M), section
    assert "STRATA_ADMIN_TOKEN" in man and "strata-admin.token" in man


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_is_clean_troff():
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                        str(ROOT / "docs" / "strata.1")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p.stderr
