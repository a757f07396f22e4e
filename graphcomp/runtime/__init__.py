"""Runtime: validate a compile request, bind call arguments, run a backend's executable."""
