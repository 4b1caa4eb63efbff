// Builds torchvision's ResNet-18 as a tile embedder through smil's Core and embeds two tiles.
import Core

let model = try resnet18(embedder: true)
model.eval()
let tiles = try Tensor.zeros([2, 3, 64, 64])
let embeddings = try GradMode.noGrad { try model(tiles) }
precondition(embeddings.shape == [2, 512], "expected [2, 512], got \(embeddings.shape)")
print("resnet18(embedder: true): \(model.numParameters()) parameters, embeddings \(shapeString(embeddings.shape))")
