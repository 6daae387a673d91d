"""Label map -> photo translation: run a generator on files (:mod:`.run`), train one (:mod:`.train`), export it
to ONNX (:mod:`.export`), and score it: per-metric lists (:mod:`.evaluate`), comparison tables against
reference rows (:mod:`.compare`), the pieces both share (:mod:`.scoring`) and the printed results
(:mod:`.results`)."""
