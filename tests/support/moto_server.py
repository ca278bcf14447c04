"""moto_server with what an instance itself would write: its serial console.

moto answers GetConsoleOutput with one fixed sample for every instance; a
real instance's console holds what its boot wrote (hybrid's bootstrap
writes its HYBRID-TIMELINE markers there, and `hybrid bake` reads the bake
script's completion marker from it). Tests play the instance: they write
the console text of instance <id> to $HYBRID_MOTO_CONSOLE_DIR/<id>, and
GetConsoleOutput answers it (base64, as EC2 does); an instance without a
file gets moto's own sample. Everything else is moto, unchanged.

usage: moto_server.py [moto_server's arguments]
"""
import os
import sys

from moto.core.utils import utcnow
from moto.ec2.responses import general
from moto.ec2.utils import Base64EncodedString
from moto.core.responses import ActionResult

CONSOLE_DIR = os.environ.get("HYBRID_MOTO_CONSOLE_DIR")
_moto_answer = general.General.get_console_output


def get_console_output(self):
    instance_id = self._get_param("InstanceId")
    path = os.path.join(CONSOLE_DIR, os.path.basename(instance_id)) if CONSOLE_DIR else None
    if not path or not os.path.exists(path):
        return _moto_answer(self)
    instance = self.ec2_backend.get_instance(instance_id)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(), "Output": Base64EncodedString.from_raw_string(text)})


general.General.get_console_output = get_console_output

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
