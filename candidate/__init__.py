"""httpbin with one deliberate, documented change: the candidate release the demo tries out."""
