"""Label map -> photo translation: run a generator on files (:mod:`.run`), train one (:mod:`.train`),
score and compare them (:mod:`.evaluate`)."""
