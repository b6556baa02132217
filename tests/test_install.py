"""A built wheel, installed in a fresh virtual environment outside the checkout, finds
properties/ and its hetcomp-recommend serves a model package."""

import os
import site
import subprocess
import sys
import json
import textwrap

from recbole_hetcomp.quick_start import run_hetcomp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_installed_wheel_reads_its_properties_and_serves_a_package(tiny, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), ROOT], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("recbole_hetcomp-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # torch and RecBole come from the interpreter running the tests, whatever it is (a plain
    # interpreter, a venv, a conda env): `venv --system-site-packages` would give the *base*
    # interpreter's packages when the tests run in a venv. A path line in a .pth file adds the
    # directories without running their .pth files, so this checkout's editable install of
    # recbole_hetcomp stays out; the package itself comes from the wheel.
    probe_site = subprocess.run([python, "-c", "import sysconfig; "
                                 "print(sysconfig.get_paths()['purelib'])"], check=True,
                                capture_output=True, text=True).stdout.strip()
    import recbole
    import torch

    # (plus wherever torch and RecBole were found, e.g. a PYTHONPATH target directory), in the
    # order this interpreter searches them: a PYTHONPATH directory that shadows a site-packages
    # one here (pandas 2 over an image's pandas 3, benchmarks/gpu_check.sh) shadows it there.
    found = [os.path.dirname(os.path.dirname(m.__file__)) for m in (recbole, torch)]
    wanted = {os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]
              + found if os.path.isdir(p)}
    ours = [p for p in dict.fromkeys(os.path.realpath(p) for p in sys.path if p)
            if p in wanted]
    ours += sorted(wanted.difference(ours))
    with open(os.path.join(probe_site, "outer-site-packages.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")
    # Without PYTHONPATH, as the probe: a checkout on it (gpu_check.sh puts one there) holds the
    # egg-info the wheel build just wrote, and pip would take the package as already installed.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=env)
    probe = textwrap.dedent("""
        import os, recbole_hetcomp
        from recbole_hetcomp.config import Config, properties_file
        config = Config("CML", "ml-100k", config_dict={"use_gpu": False, "state": "ERROR"})
        print(os.path.dirname(recbole_hetcomp.__file__))
        print(properties_file("model", "CML.yaml"))
        print(config["margin"], config["trajectory_topk"], config["teachers"])
    """)
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run([python, "-c", probe], cwd=work, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout.splitlines()
    package_dir, cml_yaml, values = out[-3:]
    assert "site-packages" in package_dir and not package_dir.startswith(ROOT)
    assert cml_yaml.startswith(package_dir) and os.path.isfile(cml_yaml)
    assert values.split()[1] == "100"

    # a package written by this checkout, served by the installed console script
    _, base = tiny
    package = run_hetcomp("BPR", "tiny", config_dict={**base, "epochs": 1,
                                                      "record_trajectory": False})["package"]
    served = subprocess.run([str(venv / "bin" / "hetcomp-recommend"), package, "--user", "u1",
                             "--k", "4"], cwd=work, env=env, check=True, capture_output=True,
                            text=True).stdout
    assert len(json.loads(served)["items"]) == 4
