"""nbgrader extensions used by the course's grader (configured in nbgrader_config.py).

Students never need this module; it lives in course_lib so that nbgrader, started from any
folder, can import it.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Int


class CapOutputSize(Preprocessor):
    """Cut every output of a graded notebook to ``max_chars`` characters.

    nbgrader's own ``LimitOutput`` counts lines, so one ``print('x' * 50_000_000)`` still
    writes a 50 MB notebook and a 50 MB feedback page. Runs after execution, before grades
    are saved; error outputs (the test messages) are kept.
    """

    max_chars = Int(100_000, help="Largest text of one output, in characters").tag(config=True)
    enabled = Bool(True, help="nbconvert runs a preprocessor only when it is enabled").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n... [output cut: {len(text):,} characters, limit {self.max_chars:,}]\n"

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = self._cut(output.get("text", ""))
            elif output.get("output_type") in ("display_data", "execute_result"):
                data = output.get("data", {})
                for mime, value in list(data.items()):
                    if isinstance(value, str) and len(value) > self.max_chars:
                        if mime.startswith("image/"):
                            del data[mime]
                            data.setdefault("text/plain", f"[image dropped: {len(value):,} bytes]")
                        else:
                            data[mime] = self._cut(value)
        return cell, resources
