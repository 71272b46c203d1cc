"""The `strata` command: help, version, check-config, exit codes."""
import re


def test_help_lists_every_command(strata_cmd):
    p = strata_cmd("--help", check=0)
    assert "usage: strata COMMAND" in p.stdout
    for cmd in ("check-config", "version"):
        assert cmd in p.stdout


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


def test_check_config_redis_backend_not_in_this_build(strata_cmd, tmp_path):
    cfg = tmp_path / "redis.yaml"
    cfg.write_text(
        "caches:\n  default: { backend: memory }\n"
        "  session:\n    backend: redis\n    url: redis://127.0.0.1:6379/2\n"
    )
    p = strata_cmd("check-config", "-c", str(cfg), check=1)
    assert f"{cfg}:3:" in p.stderr
    assert "not available" in p.stderr


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
