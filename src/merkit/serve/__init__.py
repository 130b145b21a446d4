"""`merkit serve`: a local web page to analyse clips with a trained model and to browse runs.

The predict page drops clips onto `Predictor.analyse` (the code `merkit predict` runs) and shows
its result; the runs page shows the reports and comparisons `merkit report` renders. Needs the
`serve` extra (FastAPI, uvicorn, python-multipart).
"""

from merkit.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
