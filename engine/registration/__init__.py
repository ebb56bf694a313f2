"""Bring your own neutral face: register a scan of any topology, units and pose to the model topology.

Stages, one file each: ``scan`` (checks, dense samples, KD-tree), ``units``, ``landmarks``, ``rigid``
(automatic or landmark alignment), ``identity_fit`` (the face model's identity coefficients),
``nonrigid`` (Laplacian refinement along the normals), ``report`` (residuals, coverage, warnings),
composed by ``pipeline``. ``synthetic`` makes test scans from the kit's identities. No Qt here.
"""
from engine.registration.config import RegistrationConfig
from engine.registration.pipeline import RegistrationResult, load_scan, register_file, register_scan
from engine.registration.report import (RegistrationCancelled, RegistrationError, RegistrationReport, load_report,
                                        report_path)

__all__ = ["RegistrationConfig", "RegistrationResult", "RegistrationReport", "RegistrationError",
           "RegistrationCancelled", "register_scan", "register_file", "load_scan", "load_report", "report_path"]
