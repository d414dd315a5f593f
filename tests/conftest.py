from tests.lab.fixtures import lab, lab_process  # noqa: F401
