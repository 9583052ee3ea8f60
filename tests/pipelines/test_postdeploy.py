"""The socket table parser behind the post-deploy check "listens only where expected"."""

from delivery import postdeploy

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt uid tmo inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 111 1
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534 0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000 65534 0 333 1
"""


def test_listening_sockets_are_matched_by_inode() -> None:
    assert postdeploy.listening([TCP], {"111"}) == {"127.0.0.1:8080"}
    # A socket on all interfaces belonging to the process is reported, so the check fails.
    assert postdeploy.listening([TCP], {"111", "222"}) == {"127.0.0.1:8080", "0.0.0.0:8081"}
    assert postdeploy.listening([TCP], {"333"}) == set()  # established, not listening
