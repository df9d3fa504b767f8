"""course_lib: reference helpers for the KV-cache course.

One module per concern:

- ``specs``     model and hardware facts, with sources
- ``units``     bytes, GB vs GiB, formatting
- ``grading``   answer checks whose messages name the likely mistake
- ``minigpt``   the course's tiny GPT (building blocks; students write attention and the cache)
- ``timing``    timers with repeats, medians and progress bars
- ``plotting``  latency and roofline plots
- ``roofline``  probes of this machine's memory bandwidth and matmul peak (Lab 02)
- ``measured``  GPU measurements made once for the course (``data/``), with the device they ran on

It holds helpers, never the answers students must write, and nothing only instructors run
(reference generation, grading: ``tools/``).
"""

__version__ = "0.1.0"
