"""The release tag: a commit's short sha, a distinct visible tag for uncommitted changes,
and the refusal to ship those to hosts unless allowed. Git runs in throwaway repositories."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

import pytest

from deploy.errors import Refused
from deploy.release.revision import (
    Revision,
    dirty_tag,
    nogit_tag,
    parse_status,
    require_committed,
    revision,
)


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "app.py").write_text("print('one')\n")
    (path / ".gitignore").write_text(".env\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "one")
    return path


def test_a_clean_checkout_is_tagged_by_its_short_sha(repo):
    rev = revision(repo)
    assert rev == Revision(git(repo, "rev-parse", "--short", "HEAD"), "clean", rev.sha)
    assert rev.committed


def test_uncommitted_changes_get_a_distinct_tag_that_follows_the_changes(repo):
    sha = git(repo, "rev-parse", "--short", "HEAD")
    (repo / "app.py").write_text("print('two')\n")
    first = revision(repo)
    assert re.fullmatch(rf"{sha}-dirty-[0-9a-f]{{8}}", first.tag), first.tag
    assert (first.state, first.sha, first.changed) == ("dirty", sha, ("app.py",))
    assert revision(repo).tag == first.tag  # the same tree, the same tag
    (repo / "app.py").write_text("print('three')\n")
    assert revision(repo).tag not in (first.tag, sha)


def test_a_new_untracked_file_makes_the_tree_dirty_and_an_ignored_one_does_not(repo):
    (repo / ".env").write_text("POSTGRES_PASSWORD=x\n")
    assert revision(repo).state == "clean"
    (repo / "new.py").write_text("x = 1\n")
    with_file = revision(repo)
    assert with_file.state == "dirty" and with_file.changed == ("new.py",)
    (repo / "new.py").write_text("x = 2\n")
    assert revision(repo).tag != with_file.tag  # its content counts, not only its name


def test_staged_changes_count_too(repo):
    (repo / "app.py").write_text("print('staged')\n")
    git(repo, "add", "app.py")
    assert revision(repo).state == "dirty"


def test_a_directory_without_git_gets_a_time_tag(tmp_path):
    now = datetime(2026, 11, 28, 17, 42, 0, tzinfo=UTC)
    assert revision(tmp_path, now=now) == Revision("nogit-20261128T174200Z", "nogit")


def test_the_dirty_hash_covers_the_diff_and_each_untracked_file():
    base = dirty_tag("abc1234", b"diff", [])
    assert re.fullmatch(r"abc1234-dirty-[0-9a-f]{8}", base)
    assert dirty_tag("abc1234", b"diff", []) == base
    assert dirty_tag("abc1234", b"diff2", []) != base
    assert dirty_tag("abc1234", b"diff", [("a", b"")]) != base
    # Order of discovery does not matter; names and contents do.
    assert dirty_tag("s", b"", [("a", b"1"), ("b", b"2")]) == \
        dirty_tag("s", b"", [("b", b"2"), ("a", b"1")])
    assert dirty_tag("s", b"", [("a", b"12")]) != dirty_tag("s", b"", [("a1", b"2")])
    assert nogit_tag(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "nogit-20260102T030405Z"


def test_status_paths_come_from_porcelain_output_renames_included():
    out = b" M app.py\0R  new.py\0old.py\0?? dir/file with space\0"
    assert parse_status(out) == ("app.py", "new.py", "dir/file with space")
    assert parse_status(b"") == ()


def test_a_remote_deploy_of_uncommitted_changes_is_refused_saying_how_to_proceed():
    rev = Revision("abc1234-dirty-1a2b3c4d", "dirty", "abc1234",
                   ("a.py", "b.py", "c.py", "d.py", "e.py", "f.py"))
    with pytest.raises(Refused) as refused:
        require_committed(rev, allow=False)
    assert refused.value.exit_code == 5
    assert str(refused.value) == (
        "deploy: refusing to ship uncommitted changes to hosts: the working tree differs from "
        "commit abc1234 in 6 file(s) (a.py, b.py, c.py, d.py, e.py, …); its image would be "
        "abc1234-dirty-1a2b3c4d. Commit or stash them, so that every host runs a commit's "
        "image, or pass --allow-dirty to ship this tree as abc1234-dirty-1a2b3c4d")
    require_committed(rev, allow=True)  # the explicit flag lets it through
    require_committed(Revision("abc1234", "clean", "abc1234"), allow=False)


def test_a_tree_without_a_commit_is_refused_too():
    with pytest.raises(Refused) as refused:
        require_committed(Revision("nogit-20261128T174200Z", "nogit"), allow=False,
                          flag="--allow-uncommitted")
    assert str(refused.value) == (
        "deploy: refusing to ship to hosts from a tree git does not know (not a checkout, no "
        "commit yet, or no git): no commit names its image. Deploy from a clone, or pass "
        "--allow-uncommitted to ship it as nogit-20261128T174200Z")
