print("smil")
