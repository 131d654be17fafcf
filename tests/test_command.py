"""Plugin command building, with pfcon's own examples (spec section 7)."""

from prefect_pfcon.lib.command import build_plugin_command, localize_path_args


def test_path_flags_replace_the_following_value_only():
    args = ["-foo", "3", "-bar", "4", "-bam", "5"]
    assert localize_path_args(args, ["-foo", "-bar"]) == [
        "-foo", "/share/incoming", "-bar", "/share/incoming", "-bam", "5",
    ]


def test_value_equal_to_a_flag_is_not_reinterpreted():
    assert localize_path_args(["--dir", "--dir", "x"], ["--dir"]) == ["--dir", "/share/incoming", "x"]


def test_trailing_flag_without_value_stays():
    assert localize_path_args(["-a", "--dir"], ["--dir"]) == ["-a", "--dir"]


def test_ds_gets_incoming_and_outgoing():
    cmd = build_plugin_command(["sh", "-c", "s", "sh"], ["--dir", "whatever"], ["--dir"], "ds")
    assert cmd == ["sh", "-c", "s", "sh", "--dir", "/share/incoming", "/share/incoming", "/share/outgoing"]


def test_fs_and_ts_get_only_outgoing():
    for plugin_type in ("fs", "ts"):
        assert build_plugin_command(["app"], [], [], plugin_type) == ["app", "/share/outgoing"]
