"""Fast inference: eval-mode folding and low precision (:mod:`.optimize`), Winograd 3x3
convolutions (:mod:`.winograd`), ONNX export (:mod:`.onnx`)."""
