"""Code that runs in the cloud as a job, shipped into an image; imports nothing of the project."""
