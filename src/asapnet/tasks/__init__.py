"""The four tasks (translate, denoise, deblur, segment): build, train, evaluate and run each one,
plus the file loop the restoration tasks share (:mod:`.restore`)."""
