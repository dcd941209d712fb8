"""The camera_folder source: a folder a smart camera or its FTP drop writes into, each image inspected once."""
