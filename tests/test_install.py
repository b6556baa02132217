"""A built wheel, installed in a fresh virtual environment outside the checkout, finds properties/."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_installed_wheel_reads_its_properties(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), ROOT], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("recbole_hetcomp-*.whl")
    venv = tmp_path / "venv"
    # system site packages provide torch and RecBole; the package itself comes from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True)
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
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([python, "-c", probe], cwd=work, env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    package_dir, cml_yaml, values = out[-3:]
    assert "site-packages" in package_dir and not package_dir.startswith(ROOT)
    assert cml_yaml.startswith(package_dir) and os.path.isfile(cml_yaml)
    assert values.split()[1] == "100"
